//! `GET /health`: whether this instance can serve, for nginx and Docker health checks.

use actix_web::{HttpResponse, web};
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::answer;
use crate::db::Database;
use crate::error::ApiError;

/// `GET /health`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `healthy`.
    pub status: &'static str,
    /// When the instance answered, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub timestamp: String,
}

/// 200 when the database answers a query; the storage error's status (503 or 500) otherwise.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "check_health",
    responses(
        (status = 200, description = "The database answers", body = Health),
        (status = 500, description = "The database fails", body = crate::error::ErrorBody),
        (status = 503, description = "The database is busy, the instance is stopping, or it is shedding load", body = crate::error::ErrorBody),
    ),
)]
pub async fn check(db: web::Data<Database>) -> Result<HttpResponse, ApiError> {
    db.ping().await?;
    let health = Health {
        status: "healthy",
        timestamp: Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
    };
    Ok(answer::json(HttpResponse::Ok(), health))
}
