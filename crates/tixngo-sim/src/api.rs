//! The tenant API: `/{tenant}/organizer/tickets…` (inject, cancel, control, status, diff).
//!
//! Every call goes through [`call`]: count it, authenticate it, apply faults, then do the work
//! under the tenant's lock (synchronously, no I/O) and count the answer.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;
use serde_json::Value;

use super::faults::Roll;
use super::reply::{Failure, bad_request, error, is_json, json, not_found};
use super::simulator::{Auth, Simulator, Tenant, lock};
use super::state::{ChangeRecord, ItemResult, Store};
use super::stats::{FaultKind, Kind};
use super::validate::{self, Checked};

/// Default page size of the diff call.
pub const DIFF_DEFAULT_LIMIT: usize = 1000;
/// Largest page size of the diff call.
pub const DIFF_MAX_LIMIT: usize = 10_000;

/// Body of the three batch answers.
#[derive(Serialize)]
struct Results {
    /// One result per request item, in request order.
    results: Vec<ItemResult>,
}

/// Body of the diff answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DiffAnswer {
    /// Status transitions, oldest first.
    changes: Vec<ChangeRecord>,
    /// Key to pass as `paginationKey` next time (always present).
    next_page_key: String,
    /// Whether more changes are waiting beyond this page.
    has_more: bool,
}

fn unauthorized(message: String) -> Response {
    error(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// Counts, authenticates, injects faults, runs `work`, counts the answer.
async fn call<F>(
    sim: &Simulator,
    kind: Kind,
    tenant: Result<String, PathRejection>,
    headers: &HeaderMap,
    work: F,
) -> Response
where
    F: FnOnce(&Tenant) -> Response + Send,
{
    let inner = &sim.inner;
    inner.counters.request(kind);
    let response = match tenant {
        Err(rejection) => bad_request(rejection.body_text()),
        Ok(org) => {
            let key = headers.get(&inner.api_key_header).map(HeaderValue::as_bytes);
            match sim.authenticate(&org, key) {
                Auth::MissingKey => unauthorized(format!("missing API key header {}", inner.api_key_header)),
                Auth::Invalid => unauthorized("invalid API key or unknown organization".to_owned()),
                Auth::Ok(t) => run(sim, kind, &t, work).await,
            }
        }
    };
    let code = response.status().as_u16();
    inner.counters.response(code);
    tracing::debug!(kind = kind.as_str(), status = code, "tixngo sim call");
    response
}

/// Applies faults, then the work.
async fn run<F>(sim: &Simulator, kind: Kind, tenant: &Tenant, work: F) -> Response
where
    F: FnOnce(&Tenant) -> Response + Send,
{
    let inner = &sim.inner;
    let _in_progress = (kind == Kind::Diff).then(|| tenant.diff.enter());
    let faults = sim.effective_faults(tenant);
    let delay = faults.pick_latency();
    if !delay.is_zero() {
        inner.counters.fault(FaultKind::Latency);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = inner.shutdown.cancelled() => {}
        }
    }
    if faults.outage {
        inner.counters.fault(FaultKind::Outage);
        return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "simulated outage");
    }
    if let Some(redirect) = &faults.redirect {
        inner.counters.fault(FaultKind::Redirect);
        let status = StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::TEMPORARY_REDIRECT);
        let mut r = error(status, "moved", "simulated redirect");
        if let Ok(location) = HeaderValue::from_str(&redirect.location) {
            r.headers_mut().insert(header::LOCATION, location);
        }
        return r;
    }
    let mut hang_after = false;
    match faults.roll() {
        None => {}
        Some(Roll::RateLimited) => {
            inner.counters.fault(FaultKind::RateLimit);
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "simulated rate limit",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(faults.retry_after_secs));
            return r;
        }
        Some(Roll::Unavailable) => {
            inner.counters.fault(FaultKind::Error);
            return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "simulated error");
        }
        Some(Roll::Timeout) => {
            inner.counters.fault(FaultKind::Timeout);
            if faults.timeout_applies {
                hang_after = true;
            } else {
                sim.hang().await;
                return error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway_timeout",
                    "simulated timeout",
                );
            }
        }
    }
    let response = work(tenant);
    if hang_after {
        sim.hang().await;
    }
    response
}

/// Reads a batch body `{"<key>":[…]}` with 1..=max_batch items.
fn parse_items(
    sim: &Simulator,
    kind: Kind,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    key: &str,
) -> Result<Vec<Value>, Failure> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        Failure {
            status,
            code: if status == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "bad_request"
            },
            message: rejection.body_text(),
        }
    })?;
    if !is_json(headers) {
        return Err(Failure::bad_request("Content-Type must be application/json"));
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| Failure::bad_request(format!("body is not valid JSON: {e}")))?;
    let shape = || Failure::bad_request(format!("body must be an object with a \"{key}\" array"));
    let Value::Object(mut obj) = value else {
        return Err(shape());
    };
    let Some(Value::Array(items)) = obj.remove(key) else {
        return Err(shape());
    };
    if items.is_empty() {
        return Err(Failure::bad_request(format!(
            "\"{key}\" must hold at least one item"
        )));
    }
    let max = sim.inner.max_batch;
    if items.len() > max {
        return Err(Failure {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "too_many_tickets",
            message: format!("at most {max} items per call, got {}", items.len()),
        });
    }
    sim.inner.counters.items(kind, items.len());
    Ok(items)
}

/// Validates every item (outside the lock), then applies them in order under the lock.
fn apply_batch<T>(
    tenant: &Tenant,
    items: Vec<Value>,
    check: fn(Value) -> Checked<T>,
    op: fn(&mut Store, Checked<T>, chrono::DateTime<Utc>) -> ItemResult,
) -> Response {
    let checked: Vec<Checked<T>> = items.into_iter().map(check).collect();
    let now = Utc::now();
    let results: Vec<ItemResult> = {
        let mut store = lock(&tenant.store);
        checked.into_iter().map(|c| op(&mut store, c, now)).collect()
    };
    json(StatusCode::OK, &Results { results })
}

/// `POST /{tenant}/organizer/tickets`: inject tickets.
pub(crate) async fn inject(
    State(sim): State<Simulator>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let tenant = path.map(|Path(t)| t);
    call(&sim, Kind::Inject, tenant, &headers, |t| {
        match parse_items(&sim, Kind::Inject, &headers, body, "tickets") {
            Ok(items) => apply_batch(t, items, validate::ticket, Store::inject),
            Err(f) => f.into_response(),
        }
    })
    .await
}

/// `POST /{tenant}/organizer/tickets/cancellations`: delete tickets.
pub(crate) async fn cancel(
    State(sim): State<Simulator>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let tenant = path.map(|Path(t)| t);
    call(&sim, Kind::Cancel, tenant, &headers, |t| {
        match parse_items(&sim, Kind::Cancel, &headers, body, "cancellations") {
            Ok(items) => apply_batch(t, items, validate::cancellation, Store::cancel),
            Err(f) => f.into_response(),
        }
    })
    .await
}

/// `POST /{tenant}/organizer/tickets/controls`: mark tickets controlled.
pub(crate) async fn control(
    State(sim): State<Simulator>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let tenant = path.map(|Path(t)| t);
    call(&sim, Kind::Control, tenant, &headers, |t| {
        match parse_items(&sim, Kind::Control, &headers, body, "controls") {
            Ok(items) => apply_batch(t, items, validate::control, Store::control),
            Err(f) => f.into_response(),
        }
    })
    .await
}

/// `GET /{tenant}/organizer/tickets/{ticketId}`: one ticket's status.
pub(crate) async fn status(
    State(sim): State<Simulator>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let (tenant, ticket_id) = match path {
        Ok(Path((t, id))) => (Ok(t), id),
        Err(r) => (Err(r), String::new()),
    };
    call(&sim, Kind::Status, tenant, &headers, |t| {
        let view = lock(&t.store).status(&ticket_id, Utc::now());
        match view {
            Some(v) => json(StatusCode::OK, &v),
            None => not_found(format!("ticket {ticket_id} not found")),
        }
    })
    .await
}

/// `GET /{tenant}/organizer/tickets/diff?paginationKey=K&limit=N`: status changes since K.
pub(crate) async fn diff(
    State(sim): State<Simulator>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let tenant = path.map(|Path(t)| t);
    call(&sim, Kind::Diff, tenant, &headers, |t| {
        diff_page(t, query.as_deref())
    })
    .await
}

fn diff_page(tenant: &Tenant, query: Option<&str>) -> Response {
    let mut key = None;
    let mut limit = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "paginationKey" => key = Some(v.into_owned()),
            "limit" => limit = Some(v.into_owned()),
            _ => {}
        }
    }
    let limit = match limit {
        None => DIFF_DEFAULT_LIMIT,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=DIFF_MAX_LIMIT).contains(&n) && s.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return bad_request(format!("limit must be an integer from 1 to {DIFF_MAX_LIMIT}")),
        },
    };
    let from = match key.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return bad_request("malformed paginationKey"),
        },
    };
    let page = lock(&tenant.store).diff(from, limit);
    match page {
        Some(p) => json(
            StatusCode::OK,
            &DiffAnswer {
                changes: p.changes,
                next_page_key: p.next.to_string(),
                has_more: p.has_more,
            },
        ),
        None => bad_request("unknown paginationKey: it was not issued by this server"),
    }
}
