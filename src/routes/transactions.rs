//! `POST /clientes/{id}/transacoes`: a credit or a debit.

use actix_web::{HttpResponse, web};

use super::find_client;
use crate::db::{Database, Recorded};
use crate::domain::NewTransaction;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Applies a transaction and answers the client's limit and new balance.
///
/// The body is taken as raw bytes and parsed as JSON whatever its `Content-Type`, so a body sent
/// with curl's `-d` (a form type) is read like any other.
pub async fn create(
    db: web::Data<Database>,
    metrics: web::Data<Metrics>,
    id: web::Path<String>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let client = find_client(&db, &id)?;
    let transaction = NewTransaction::from_json(&body.map_err(ApiError::from_body_error)?)?;
    let kind = transaction.kind;
    let recorded = db.record(client, transaction).await?;
    metrics.transaction(kind, matches!(recorded, Recorded::Applied(_)));
    match recorded {
        Recorded::Applied(applied) => Ok(HttpResponse::Ok().json(applied)),
        Recorded::Refused(reason) => Err(reason.into()),
    }
}
