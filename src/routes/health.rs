//! `GET /health`: whether this instance can serve, for nginx and Docker health checks.

use actix_web::{HttpResponse, web};
use chrono::{SecondsFormat, Utc};
use serde_json::json;

use crate::db::Database;
use crate::error::ApiError;

/// 200 when the database answers a query; the storage error's status (503 or 500) otherwise.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "check_health",
    responses(
        (status = 200, description = "The database answers", body = crate::openapi::Health),
        (status = 500, description = "The database fails", body = crate::openapi::ErrorBody),
        (status = 503, description = "The database is busy, or the instance is shedding load", body = crate::openapi::ErrorBody),
    ),
)]
pub async fn check(db: web::Data<Database>) -> Result<HttpResponse, ApiError> {
    db.ping().await?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "healthy",
        "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
    })))
}
