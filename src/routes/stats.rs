//! `GET /stats`: this instance's counters, for benchmarking the shared-file design.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::db::{Database, busy};

/// How this instance's writes were grouped, and how often and how long they waited for the
/// other instance's write lock.
pub async fn show(db: web::Data<Database>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "pid": std::process::id(),
        "write_batches": db.batch_stats(),
        "lock_waits": busy::lock_waits(),
    }))
}
