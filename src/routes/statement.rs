//! `GET /clientes/{id}/extrato`: balance and the last transactions.

use actix_web::{HttpRequest, HttpResponse, web};

use super::find_client;
use crate::answer::json;
use crate::db::Database;
use crate::error::ApiError;

/// Answers the client's statement.
#[utoipa::path(
    get,
    path = "/clientes/{id}/extrato",
    operation_id = "show_statement",
    params(("id" = i64, Path, description = "The client (1 to 5 exist)")),
    responses(
        (status = 200, description = "Balance and the last 10 transactions, newest first", body = crate::domain::Statement,
            links(("transaction" = (operation_id = "create_transaction", parameters(("id" = "$request.path.id")))))),
        (status = 404, description = "Unknown or non-numeric client id", body = crate::error::ErrorBody),
        (status = 503, description = "The database stayed busy, the instance is stopping, or it is shedding load (MAX_IN_FLIGHT); retry", body = crate::error::ErrorBody),
    ),
)]
pub async fn show(db: web::Data<Database>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let client = find_client(&db, &request)?;
    Ok(json(HttpResponse::Ok(), db.statement(client).await?))
}
