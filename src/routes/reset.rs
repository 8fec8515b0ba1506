//! `POST /reset`: back to the initial state, for every instance sharing the database.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::db::Database;
use crate::error::ApiError;

/// Deletes every transaction and sets every balance to 0.
#[utoipa::path(
    post,
    path = "/reset",
    responses(
        (status = 200, description = "Every balance 0, every transaction deleted", body = crate::openapi::Status),
        (status = 503, description = "The database stayed busy, or the instance is shedding load; retry", body = crate::openapi::ErrorBody),
    ),
)]
pub async fn reset(db: web::Data<Database>) -> Result<HttpResponse, ApiError> {
    db.reset().await?;
    Ok(HttpResponse::Ok().json(json!({"status": "reset"})))
}
