//! The HTTP routes of the simulator.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};

use super::simulator::Simulator;
use super::{admin, api, reply};

/// Largest request body accepted (a full batch of large tickets fits easily).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

impl Simulator {
    /// The simulator's HTTP routes: the tenant API under `/{tenant}/organizer/tickets` and the
    /// admin API under `/admin`. Serve it with `axum::serve`, or use [`super::spawn`].
    pub fn router(&self) -> Router {
        let base = "/{tenant}/organizer/tickets";
        Router::new()
            .route("/admin/tenants", get(admin::list_tenants))
            .route("/admin/tenants/{tenant}", put(admin::put_tenant))
            .route(
                "/admin/faults",
                get(admin::get_global_faults)
                    .put(admin::put_global_faults)
                    .delete(admin::delete_global_faults),
            )
            .route(
                "/admin/tenants/{tenant}/faults",
                get(admin::get_tenant_faults)
                    .put(admin::put_tenant_faults)
                    .delete(admin::delete_tenant_faults),
            )
            .route("/admin/tenants/{tenant}/tickets/{ticket_id}", get(admin::ticket))
            .route(
                "/admin/tenants/{tenant}/tickets/{ticket_id}/transition",
                post(admin::transition),
            )
            .route("/admin/stats", get(admin::stats))
            .route("/admin/reset", post(admin::reset))
            .route(base, post(api::inject))
            .route(&format!("{base}/cancellations"), post(api::cancel))
            .route(&format!("{base}/controls"), post(api::control))
            .route(&format!("{base}/diff"), get(api::diff))
            .route(&format!("{base}/{{ticket_id}}"), get(api::status))
            .fallback(reply::no_route)
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(self.clone())
    }
}
