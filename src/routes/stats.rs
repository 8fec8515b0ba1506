//! `GET /stats`: this instance's counters, for benchmarking the shared-file design.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::db::{Database, busy};

/// How this instance's writes were grouped, and how often and how long they waited for the
/// other instance's write lock.
#[utoipa::path(
    get,
    path = "/stats",
    operation_id = "show_stats",
    responses(
        (status = 200, description = "`{pid, write_batches, lock_waits}`: this instance's write-path counters (README)", content_type = "application/json", body = Object),
        (status = 503, description = "The instance is shedding load (MAX_IN_FLIGHT); retry", body = crate::openapi::ErrorBody),
    ),
)]
pub async fn show(db: web::Data<Database>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "pid": std::process::id(),
        "write_batches": db.batch_stats(),
        "lock_waits": busy::lock_waits(),
    }))
}
