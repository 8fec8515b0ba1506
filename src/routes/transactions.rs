//! `POST /clientes/{id}/transacoes`: a credit or a debit.

use actix_web::{HttpRequest, HttpResponse, web};

use super::body::Body;
use super::{find_client, json};
use crate::db::{Database, Recorded};
use crate::domain::NewTransaction;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Applies a transaction and answers the client's limit and new balance.
///
/// The body is taken as raw bytes (`body::Body`) and parsed as JSON whatever its `Content-Type`,
/// so a body sent with curl's `-d` (a form type) is read like any other.
#[utoipa::path(
    post,
    path = "/clientes/{id}/transacoes",
    operation_id = "create_transaction",
    params(("id" = i64, Path, description = "The client (1 to 5 exist)")),
    request_body(content = crate::openapi::TransactionRequest, description = "Read as JSON whatever its Content-Type"),
    responses(
        (status = 200, description = "Applied: the limit and the balance right after it", body = crate::domain::Applied,
            links(("statement" = (operation_id = "show_statement", parameters(("id" = "$request.path.id")))))),
        (status = 400, description = "The body could not be read (cut short)", body = crate::openapi::ErrorBody),
        (status = 404, description = "Unknown or non-numeric client id", body = crate::openapi::ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = crate::openapi::ErrorBody),
        (status = 422, description = "Invalid body, debit past the limit, or credit past the balance ceiling; nothing changes", body = crate::openapi::ErrorBody),
        (status = 503, description = "The database stayed busy past DB_BUSY_TIMEOUT_MS, or the instance is shedding load (MAX_IN_FLIGHT); retry", body = crate::openapi::ErrorBody),
    ),
)]
pub async fn create(
    db: web::Data<Database>,
    metrics: web::Data<Metrics>,
    request: HttpRequest,
    body: Result<Body, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let client = find_client(&db, &request)?;
    let transaction = NewTransaction::from_json(&body?.0)?;
    let kind = transaction.kind;
    let recorded = db.record(client, transaction).await?;
    metrics.transaction(kind, matches!(recorded, Recorded::Applied(_)));
    match recorded {
        Recorded::Applied(applied) => Ok(json(HttpResponse::Ok(), applied)),
        Recorded::Refused(reason) => Err(reason.into()),
    }
}
