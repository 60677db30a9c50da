//! The simulator's admin API under `/admin` (no authentication, never subject to faults).

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::faults::Faults;
use super::reply::{Failure, bad_request, error, json, not_found, parse_body};
use super::simulator::Simulator;
use super::state::TransitionError;
use super::status::Status;

/// Body of `PUT /admin/tenants/{tenant}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TenantBody {
    /// The API key the tenant's calls must carry.
    api_key: String,
}

/// Body of the transition call.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionBody {
    /// Target status (wire name).
    to: String,
}

/// Answer of the transition call.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TransitionAnswer {
    /// The ticket.
    ticket_id: String,
    /// Its status now.
    status: Status,
    /// Its status before.
    previous_status: Status,
    /// False when it already had that status (no change recorded).
    changed: bool,
}

/// Checks a tenant name is usable in a URL path segment and does not shadow `/admin`.
pub(crate) fn check_tenant_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("tenant name must not be empty".to_owned());
    }
    if name == "admin" {
        return Err("tenant name \"admin\" is reserved".to_owned());
    }
    if name
        .chars()
        .any(|c| matches!(c, '/' | '?' | '#' | '%') || c.is_whitespace() || c.is_control())
    {
        return Err(
            "tenant name must not contain '/', '?', '#', '%', spaces or control characters".to_owned(),
        );
    }
    Ok(())
}

fn path_error(r: PathRejection) -> Response {
    bad_request(r.body_text())
}

fn unknown_tenant(org: &str) -> Response {
    not_found(format!("unknown tenant {org}"))
}

/// `GET /admin/tenants`: registered tenant names (keys are never shown).
pub(crate) async fn list_tenants(State(sim): State<Simulator>) -> Response {
    json(StatusCode::OK, &json!({ "tenants": sim.tenant_names() }))
}

/// `PUT /admin/tenants/{tenant}`: register a tenant or change its key.
pub(crate) async fn put_tenant(
    State(sim): State<Simulator>,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    let org = match path {
        Ok(Path(org)) => org,
        Err(r) => return path_error(r),
    };
    if let Err(msg) = check_tenant_name(&org) {
        return bad_request(msg);
    }
    let body: TenantBody = match parse_body(&body) {
        Ok(b) => b,
        Err(f) => return f.into_response(),
    };
    if body.api_key.is_empty() {
        return bad_request("apiKey must not be empty");
    }
    let created = !sim.has_tenant(&org);
    sim.add_tenant(&org, &body.api_key);
    tracing::info!(tenant = %org, created, "simulator tenant registered");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    json(status, &json!({ "tenant": org, "created": created }))
}

fn faults_answer(faults: Option<Faults>) -> Response {
    json(StatusCode::OK, &faults)
}

fn read_faults(body: &[u8]) -> Result<Faults, Failure> {
    let faults: Faults = parse_body(body)?;
    faults.validate().map_err(Failure::bad_request)?;
    Ok(faults)
}

/// `GET /admin/faults`: the global faults.
pub(crate) async fn get_global_faults(State(sim): State<Simulator>) -> Response {
    faults_answer(sim.faults(None))
}

/// `PUT /admin/faults`: replace the global faults.
pub(crate) async fn put_global_faults(State(sim): State<Simulator>, body: Bytes) -> Response {
    match read_faults(&body) {
        Ok(f) => {
            sim.set_faults(None, f.clone());
            faults_answer(Some(f))
        }
        Err(f) => f.into_response(),
    }
}

/// `DELETE /admin/faults`: no global faults.
pub(crate) async fn delete_global_faults(State(sim): State<Simulator>) -> Response {
    sim.clear_faults(None);
    faults_answer(sim.faults(None))
}

/// `GET /admin/tenants/{tenant}/faults`: the tenant's own faults, or `null`.
pub(crate) async fn get_tenant_faults(
    State(sim): State<Simulator>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let org = match path {
        Ok(Path(org)) => org,
        Err(r) => return path_error(r),
    };
    if !sim.has_tenant(&org) {
        return unknown_tenant(&org);
    }
    faults_answer(sim.faults(Some(&org)))
}

/// `PUT /admin/tenants/{tenant}/faults`: set the tenant's own faults.
pub(crate) async fn put_tenant_faults(
    State(sim): State<Simulator>,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    let org = match path {
        Ok(Path(org)) => org,
        Err(r) => return path_error(r),
    };
    let faults = match read_faults(&body) {
        Ok(f) => f,
        Err(f) => return f.into_response(),
    };
    if sim.set_faults(Some(&org), faults.clone()) {
        faults_answer(Some(faults))
    } else {
        unknown_tenant(&org)
    }
}

/// `DELETE /admin/tenants/{tenant}/faults`: the tenant falls back to the global faults.
pub(crate) async fn delete_tenant_faults(
    State(sim): State<Simulator>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let org = match path {
        Ok(Path(org)) => org,
        Err(r) => return path_error(r),
    };
    if sim.clear_faults(Some(&org)) {
        faults_answer(None)
    } else {
        unknown_tenant(&org)
    }
}

/// `POST /admin/tenants/{tenant}/tickets/{ticketId}/transition`: a spectator-side change.
pub(crate) async fn transition(
    State(sim): State<Simulator>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Bytes,
) -> Response {
    let (org, ticket_id) = match path {
        Ok(Path(p)) => p,
        Err(r) => return path_error(r),
    };
    let body: TransitionBody = match parse_body(&body) {
        Ok(b) => b,
        Err(f) => return f.into_response(),
    };
    let Some(to) = Status::parse(&body.to) else {
        return bad_request(format!("unknown status {:?}", body.to));
    };
    match sim.transition(&org, &ticket_id, to) {
        Ok(t) => json(
            StatusCode::OK,
            &TransitionAnswer {
                ticket_id,
                status: t.status,
                previous_status: t.previous_status,
                changed: t.changed,
            },
        ),
        Err(e @ (TransitionError::UnknownTenant(_) | TransitionError::UnknownTicket(_))) => {
            not_found(e.to_string())
        }
        Err(TransitionError::Rule(rule)) => error(StatusCode::CONFLICT, "conflict", rule.to_string()),
    }
}

/// `GET /admin/tenants/{tenant}/tickets/{ticketId}`: the inspection view.
pub(crate) async fn ticket(
    State(sim): State<Simulator>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let (org, ticket_id) = match path {
        Ok(Path(p)) => p,
        Err(r) => return path_error(r),
    };
    if !sim.has_tenant(&org) {
        return unknown_tenant(&org);
    }
    match sim.ticket(&org, &ticket_id) {
        Some(view) => json(StatusCode::OK, &view),
        None => not_found(format!("ticket {ticket_id} never seen")),
    }
}

/// `GET /admin/stats`.
pub(crate) async fn stats(State(sim): State<Simulator>) -> Response {
    json(StatusCode::OK, &sim.stats())
}

/// `POST /admin/reset`: clear tickets, counters and faults; keep tenants.
pub(crate) async fn reset(State(sim): State<Simulator>) -> Response {
    sim.reset();
    json(StatusCode::OK, &json!({ "reset": true }))
}
