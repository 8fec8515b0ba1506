//! The one error type of the API: every failure a handler can meet, and the status and JSON body
//! it becomes.
//!
//! Client mistakes (4xx) are answered with `{"error": "..."}` saying what was wrong and are not
//! logged: under load they are routine (a refused debit is a 422). Server failures (5xx) are logged
//! once, here, with their cause, and the client gets a generic message; a request refused because
//! the instance is stopping (503) is expected during a restart and not logged; a write refused
//! because the database's disk is full (503) is logged as a warning: the operator's to fix, not a
//! fault of the service.

use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::answer;
use crate::db::StorageError;
use crate::domain::{InvalidTransaction, Refused};

/// The largest request body read; a valid transaction body is under 100 bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("client not found")]
    ClientNotFound,
    #[error("route not found")]
    RouteNotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error(transparent)]
    InvalidTransaction(#[from] InvalidTransaction),
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body could not be read: {0}")]
    UnreadableBody(String),
    /// The caller may not do this here (`POST /reset` without its token, or turned off).
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ApiError {
    /// A body past [`MAX_BODY_BYTES`].
    pub fn body_too_large() -> Self {
        ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        }
    }

    /// Classifies a failure to read the request body (too large, cut short, ...).
    pub fn from_body_error(err: PayloadError) -> Self {
        match err {
            PayloadError::Overflow => Self::body_too_large(),
            err => ApiError::UnreadableBody(err.to_string()),
        }
    }
}

/// Every error answer: what was wrong, in words.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::ClientNotFound | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::InvalidTransaction(_) | ApiError::Refused(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnreadableBody(_) => StatusCode::BAD_REQUEST,
            ApiError::Storage(
                StorageError::Busy(_) | StorageError::Stopping | StorageError::Full(_),
            ) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Storage(StorageError::Other(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let error = match self {
            // Expected while an instance stops (a rolling restart): not worth an error line each.
            ApiError::Storage(StorageError::Stopping) => {
                "the instance is stopping; retry".to_owned()
            }
            ApiError::Storage(StorageError::Full(cause)) => {
                tracing::warn!(%cause, "a write was refused: the database's storage is full");
                "the database's storage is full; nothing was written, retry later".to_owned()
            }
            _ if status.is_server_error() => {
                tracing::error!(error = %self, cause = ?std::error::Error::source(self), "request failed");
                match self {
                    ApiError::Storage(StorageError::Busy(_)) => "the database is busy; retry",
                    _ => "internal error",
                }
                .to_owned()
            }
            _ => self.to_string(),
        };
        answer::json(HttpResponse::build(status), ErrorBody { error })
    }
}
