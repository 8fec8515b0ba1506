//! `POST /reset`: back to the initial state, for every instance sharing the database.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::db::Database;
use crate::error::ApiError;

/// Deletes every transaction and sets every balance to 0.
pub async fn reset(db: web::Data<Database>) -> Result<HttpResponse, ApiError> {
    db.reset().await?;
    Ok(HttpResponse::Ok().json(json!({"status": "reset"})))
}
