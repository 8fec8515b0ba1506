//! `GET /metrics`: this instance's measurements in the Prometheus text format.
//!
//! Per instance by nature: a scraper reads each instance on its own port (compose: `api01:8080`
//! and `api02:8080`), never through nginx, which would answer from whichever instance it picked.
//! With `API_METRICS_PORT` set, it is served on that port alone and the API's listeners, which
//! nginx reaches, answer 404: a deployment keeps its measurements off the public port.

use actix_web::{HttpResponse, web};

use crate::error::ApiError;
use crate::metrics::{CONTENT_TYPE, Metrics};

/// Whether `/metrics` is served on this server: on the API's listeners unless `API_METRICS_PORT`
/// gives it a port of its own, where it then is the only route.
#[derive(Debug, Clone, Copy)]
pub struct MetricsOnApi(pub bool);

/// Renders every series (see `crate::metrics`).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "show_metrics",
    responses(
        (status = 200, description = "This instance's series in the Prometheus text format (docs/OBSERVABILITY.md)", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 404, description = "API_METRICS_PORT is set: /metrics is served on that port only", body = crate::error::ErrorBody),
        (status = 503, description = "The instance is shedding load (MAX_IN_FLIGHT); retry", body = crate::error::ErrorBody),
    ),
)]
pub async fn show(
    metrics: web::Data<Metrics>,
    here: web::Data<MetricsOnApi>,
) -> Result<HttpResponse, ApiError> {
    if !here.0 {
        return Err(ApiError::RouteNotFound);
    }
    Ok(HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(metrics.render()))
}
