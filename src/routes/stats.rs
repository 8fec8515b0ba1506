//! `GET /stats`: this instance's counters, for benchmarking the shared-file design.

use actix_web::HttpResponse;
use serde_json::json;

use crate::db::busy;

/// How often and how long this instance's writes waited for the other instance's write lock.
pub async fn show() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "pid": std::process::id(),
        "lock_waits": busy::lock_waits(),
    }))
}
