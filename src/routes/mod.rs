//! HTTP handlers, one file per resource. Each one extracts, validates, makes one storage call and
//! answers: no SQL and no status codes here (those live in `db` and `error`).

pub mod body;
pub mod fallback;
pub mod health;
pub mod metrics;
pub mod reset;
pub mod statement;
pub mod transactions;

use crate::db::Database;
use crate::domain::{Client, ClientId};
use crate::error::ApiError;

/// The client named by a path segment; an id that is not a number names no client.
fn find_client(db: &Database, segment: &str) -> Result<Client, ApiError> {
    ClientId::parse(segment)
        .and_then(|id| db.client(id))
        .ok_or(ApiError::ClientNotFound)
}
