//! `GET /clientes/{id}/extrato`: balance and the last transactions.

use actix_web::{HttpResponse, web};

use super::find_client;
use crate::db::Database;
use crate::error::ApiError;

/// Answers the client's statement.
pub async fn show(
    db: web::Data<Database>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let client = find_client(&db, &id)?;
    Ok(HttpResponse::Ok().json(db.statement(client).await?))
}
