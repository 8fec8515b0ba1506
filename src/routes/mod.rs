//! HTTP handlers, one file per resource. Each one extracts, validates, makes one storage call and
//! answers: no SQL and no status codes here (those live in `db` and `error`). Each documents
//! itself with `#[utoipa::path]`, from which `openapi` both writes the document and mounts it.

pub mod body;
pub mod fallback;
pub mod health;
pub mod metrics;
pub mod reset;
pub mod statement;
pub mod transactions;

use actix_web::HttpRequest;

use crate::db::Database;
use crate::domain::{Client, ClientId};
use crate::error::ApiError;

/// The client named by the path's `{id}` segment; an id that is not a number names no client.
///
/// The segment is read where the router left it, without copying it out. Only a segment that
/// still holds a percent sign is decoded first, as `web::Path<String>` would decode it (the
/// router has already decoded everything but `%25`, `%2F` and `%2B`).
fn find_client(db: &Database, request: &HttpRequest) -> Result<Client, ApiError> {
    let path = request.match_info();
    let segment = path.get("id").unwrap_or_default();
    let id = if segment.contains('%') {
        path.load::<String>()
            .ok()
            .and_then(|decoded| ClientId::parse(&decoded))
    } else {
        ClientId::parse(segment)
    };
    id.and_then(|id| db.client(id))
        .ok_or(ApiError::ClientNotFound)
}
