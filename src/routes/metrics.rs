//! `GET /metrics`: this instance's measurements in the Prometheus text format.
//!
//! Per instance by nature: a scraper reads each instance on its own port (compose: `api01:8080`
//! and `api02:8080`), never through nginx, which would answer from whichever instance it picked.

use actix_web::{HttpResponse, web};

use crate::db::Database;
use crate::metrics::{CONTENT_TYPE, Metrics};

/// Renders every series (see `crate::metrics`).
pub async fn show(metrics: web::Data<Metrics>, db: web::Data<Database>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(metrics.render(&db))
}
