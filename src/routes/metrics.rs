//! `GET /metrics`: this instance's measurements in the Prometheus text format.
//!
//! Per instance by nature: a scraper reads each instance on its own port (compose: `api01:8080`
//! and `api02:8080`), never through nginx, which would answer from whichever instance it picked.

use actix_web::{HttpResponse, web};

use crate::metrics::{CONTENT_TYPE, Metrics};

/// Renders every series (see `crate::metrics`).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "show_metrics",
    responses(
        (status = 200, description = "This instance's series in the Prometheus text format (docs/OBSERVABILITY.md)", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 503, description = "The instance is shedding load (MAX_IN_FLIGHT); retry", body = crate::error::ErrorBody),
    ),
)]
pub async fn show(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(metrics.render())
}
