//! `POST /clientes/{id}/transacoes`: a credit or a debit.

use actix_web::{HttpRequest, HttpResponse, web};
use utoipa::ToSchema;

use super::body::Body;
use super::find_client;
use crate::answer::json;
use crate::db::Database;
use crate::domain::{Kind, NewTransaction, Recorded};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// The body of `POST /clientes/{id}/transacoes`, as documented. The handler reads the raw bytes
/// itself (see `domain::NewTransaction::from_json`); this type only describes them.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct TransactionRequest {
    /// Cents: a JSON integer (`1.0` is refused).
    #[schema(minimum = 1, maximum = 9007199254740991_i64)]
    valor: i64,
    tipo: Kind,
    /// 1 to 10 characters (Unicode scalar values, not bytes).
    #[schema(min_length = 1, max_length = 10)]
    descricao: String,
}

/// Applies a transaction and answers the client's limit and new balance.
///
/// The body is taken as raw bytes (`body::Body`) and parsed as JSON whatever its `Content-Type`,
/// so a body sent with curl's `-d` (a form type) is read like any other.
#[utoipa::path(
    post,
    path = "/clientes/{id}/transacoes",
    operation_id = "create_transaction",
    params(("id" = i64, Path, description = "The client (1 to 5 exist)")),
    request_body(content = TransactionRequest, description = "Read as JSON whatever its Content-Type"),
    responses(
        (status = 200, description = "Applied: the limit and the balance right after it", body = crate::domain::Applied,
            links(("statement" = (operation_id = "show_statement", parameters(("id" = "$request.path.id")))))),
        (status = 400, description = "The body could not be read (cut short)", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown or non-numeric client id", body = crate::error::ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid body, debit past the limit, or credit past the balance ceiling; nothing changes", body = crate::error::ErrorBody),
        (status = 503, description = "The database stayed busy past DB_BUSY_TIMEOUT_MS, the instance is stopping, or it is shedding load (MAX_IN_FLIGHT); retry", body = crate::error::ErrorBody),
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
    let kind = transaction.kind();
    let recorded = db.record(client, transaction).await?;
    metrics.transaction(kind, matches!(recorded, Recorded::Applied(_)));
    match recorded {
        Recorded::Applied(applied) => Ok(json(HttpResponse::Ok(), applied)),
        Recorded::Refused(reason) => Err(reason.into()),
    }
}
