//! `POST /reset`: back to the initial state, for every instance sharing the database.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::answer;
use crate::db::Database;
use crate::error::ApiError;

/// `POST /reset`'s answer: `{"status": "reset"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub status: &'static str,
}

/// Deletes every transaction and sets every balance to 0.
#[utoipa::path(
    post,
    path = "/reset",
    responses(
        (status = 200, description = "Every balance 0, every transaction deleted", body = Status),
        (status = 503, description = "The database stayed busy, the instance is stopping, or it is shedding load; retry", body = crate::error::ErrorBody),
    ),
)]
pub async fn reset(db: web::Data<Database>) -> Result<HttpResponse, ApiError> {
    db.reset().await?;
    Ok(answer::json(HttpResponse::Ok(), Status { status: "reset" }))
}
